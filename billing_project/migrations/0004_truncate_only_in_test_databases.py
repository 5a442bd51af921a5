"""The TRUNCATE exception of the append-only guard (used by the test suite to reset
tables) now also requires a test database (pytest-django names them test_…), so no
production session can use it by setting the flag."""

from django.db import migrations

FUNCTION = r"""
CREATE OR REPLACE FUNCTION billing_refuse_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE'
       AND current_setting('billing.allow_truncate', true) = 'on'
       AND current_database() LIKE 'test\_%' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Records here are never edited or deleted; write a correcting record instead.';
END;
$$;
"""


class Migration(migrations.Migration):
    dependencies = [("billing_project", "0003_alter_apikey_options")]

    operations = [migrations.RunSQL(FUNCTION, migrations.RunSQL.noop)]
