"""A consume's events get an idempotency space of their own: (tenant, consume key, use),
apart from the events services report (unique per tenant and key, as before).

Consumes recorded before this migration wrote their uses as reported events keyed
`key`, `key:2` … and stay so (events are append-only): those keys stay taken in the
reported space, as they were."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("billing_project", "0004_truncate_only_in_test_databases"),
        ("plans", "0004_guard_races_and_truncate"),
        ("subscriptions", "0007_billing_periods"),
        ("usage", "0002_usage_events_append_only"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="usageevent",
            name="usageevent_idempotent",
        ),
        migrations.AddField(
            model_name="usageevent",
            name="origin",
            field=models.CharField(
                choices=[
                    ("reported", "reported through the usage API"),
                    ("consume", "recorded by entitlements/consume"),
                ],
                db_default="reported",
                default="reported",
                max_length=8,
            ),
        ),
        migrations.AddField(
            model_name="usageevent",
            name="use",
            field=models.PositiveIntegerField(
                db_default=1,
                default=1,
                help_text="Which of a consume's uses (1…N) this event is; 1 for a reported event.",
            ),
        ),
        migrations.AlterField(
            model_name="usageevent",
            name="idempotency_key",
            field=models.CharField(
                help_text="The service's key; for a consume's events, the consume's key.", max_length=255
            ),
        ),
        migrations.AddConstraint(
            model_name="usageevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("origin", "reported")),
                fields=("tenant", "idempotency_key"),
                name="usageevent_idempotent",
            ),
        ),
        migrations.AddConstraint(
            model_name="usageevent",
            constraint=models.UniqueConstraint(
                condition=models.Q(("origin", "consume")),
                fields=("tenant", "idempotency_key", "use"),
                name="usageevent_consume_use",
            ),
        ),
        migrations.AddConstraint(
            model_name="usageevent",
            constraint=models.CheckConstraint(
                condition=models.Q(("origin__in", ["reported", "consume"])), name="usageevent_origin_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="usageevent",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("origin", "reported"), _negated=True), ("use", 1), _connector="OR"),
                name="usageevent_reported_use_one",
            ),
        ),
    ]
