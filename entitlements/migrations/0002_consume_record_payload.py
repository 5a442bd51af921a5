"""A consume's key remembers what it was used for (feature, quantity), so that the same key
with another payload is a conflict instead of the first answer. Earlier records take
their feature from the stored answer; their quantity is unknown (null)."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("entitlements", "0001_entitlements"),
    ]

    operations = [
        migrations.AddField(
            model_name="consumerecord",
            name="feature",
            field=models.CharField(default="", max_length=100),
            preserve_default=False,
        ),
        migrations.AddField(
            model_name="consumerecord",
            name="quantity",
            field=models.DecimalField(
                decimal_places=6,
                help_text="Unknown (null) for consumes recorded before it was kept.",
                max_digits=30,
                null=True,
            ),
        ),
        migrations.RunSQL(
            "UPDATE entitlements_consumerecord SET feature = response->>'feature' WHERE feature = ''",
            migrations.RunSQL.noop,
        ),
    ]
