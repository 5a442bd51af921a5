from django.db import migrations

from billing_project.db import chained


class Migration(migrations.Migration):
    dependencies = [("privacy", "0001_initial"), ("billing_project", "0006_audit_chain")]

    # an erasure is part of the audit trail: chained like the entries it rewrote
    operations = [chained("privacy_erasure", exclude=("stripe_attempts", "stripe_last_error"))]
