"""A consume record keeps its domain result (recorded or denied), not the HTTP status the
API answered it with (201 recorded, 200 denied)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("entitlements", "0002_consume_record_payload"),
    ]

    operations = [
        migrations.AddField(
            model_name="consumerecord",
            name="recorded",
            field=models.BooleanField(
                default=False, help_text="Allowed, and the usage recorded (else denied: nothing recorded)."
            ),
            preserve_default=False,
        ),
        migrations.RunSQL(
            "UPDATE entitlements_consumerecord SET recorded = (status_code = 201)",
            "UPDATE entitlements_consumerecord SET status_code = CASE WHEN recorded THEN 201 ELSE 200 END",
        ),
        # a default first, so that undoing the removal can add the column back to a full table
        migrations.AlterField(
            model_name="consumerecord", name="status_code", field=models.PositiveSmallIntegerField(default=200)
        ),
        migrations.RemoveField(model_name="consumerecord", name="status_code"),
    ]
