"""Billing periods become records: each subscription's periods are rebuilt from the
period documents its boundary events carried (`data.closed` / `data.opened`), plus the
open period of every live subscription. A closed period never changes again (trigger)."""

import django.db.models.deletion
from datetime import datetime

from django.db import migrations, models

GUARD = """
SET CONSTRAINTS ALL IMMEDIATE;  -- no pending FK checks before the table is altered
CREATE OR REPLACE FUNCTION subscriptions_billingperiod_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR OLD.closed THEN
        RAISE EXCEPTION 'billing period %: a closed period never changes (% refused)', OLD.id, TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.subscription_id <> OLD.subscription_id OR NEW.start <> OLD.start
       OR NEW.plan_version_id <> OLD.plan_version_id OR NEW.currency <> OLD.currency
       OR NEW.kind <> OLD.kind OR NEW.fee_in_advance <> OLD.fee_in_advance
       OR NEW.planned_end <> OLD.planned_end THEN
        RAISE EXCEPTION 'billing period %: only its end moves, and only until it closes', OLD.id
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER subscriptions_billingperiod_guard BEFORE UPDATE OR DELETE ON subscriptions_billingperiod
    FOR EACH ROW EXECUTE FUNCTION subscriptions_billingperiod_guard();
"""
UNGUARD = """
DROP TRIGGER IF EXISTS subscriptions_billingperiod_guard ON subscriptions_billingperiod;
DROP FUNCTION IF EXISTS subscriptions_billingperiod_guard();
"""
LIVE = ("trialing", "active", "past_due", "suspended")


def periods_from_events(apps, schema_editor):
    Subscription = apps.get_model("subscriptions", "Subscription")
    BillingPeriod = apps.get_model("subscriptions", "BillingPeriod")
    PlanVersion = apps.get_model("plans", "PlanVersion")
    currency = dict(PlanVersion.objects.values_list("pk", "currency"))
    for sub in Subscription.objects.order_by("pk").iterator():
        events = list(sub.events.order_by("at", "id"))
        open_period = None
        for event in events:
            data = event.data or {}
            closed, opened = data.get("closed"), data.get("opened")
            if closed:
                start, end = datetime.fromisoformat(closed["start"]), datetime.fromisoformat(closed["end"])
                if open_period is None or open_period.start != start:
                    open_period = BillingPeriod(
                        subscription=sub,
                        plan_version_id=closed["plan_version"],
                        currency=currency[closed["plan_version"]],
                        kind="paid" if closed["paid"] else "trial",
                        start=start,
                        fee_in_advance=False,
                        opened_by=event,
                    )
                # the version that held the period at its end priced it
                open_period.plan_version_id = closed["plan_version"]
                open_period.currency = currency[closed["plan_version"]]
                open_period.end, open_period.closed, open_period.closed_by = max(end, start), True, event
                if open_period.planned_end is None:
                    open_period.planned_end = open_period.end
                open_period.save()
                open_period = None
            if opened:
                if open_period is not None:  # never closed by a document: it ended where this one starts
                    open_period.end = max(datetime.fromisoformat(opened["start"]), open_period.start)
                    open_period.closed, open_period.closed_by = True, event
                    open_period.save()
                open_period = BillingPeriod.objects.create(
                    subscription=sub,
                    plan_version_id=opened["plan_version"],
                    currency=currency[opened["plan_version"]],
                    kind="paid" if opened["paid"] else "trial",
                    start=datetime.fromisoformat(opened["start"]),
                    end=datetime.fromisoformat(opened["end"]),
                    planned_end=datetime.fromisoformat(opened["end"]),
                    fee_in_advance=bool(opened["paid"]),
                    opened_by=event,
                )
        if sub.status not in LIVE or not events:
            continue
        in_trial = sub.trial_end is not None and sub.current_period_end == sub.trial_end
        if open_period is None or open_period.start != sub.current_period_start:
            open_period = BillingPeriod(
                subscription=sub,
                kind="trial" if in_trial else "paid",
                start=sub.current_period_start,
                fee_in_advance=False,
                opened_by=events[-1],
            )
        open_period.plan_version_id = sub.plan_version_id
        open_period.currency = currency[sub.plan_version_id]
        open_period.end = sub.current_period_end
        if open_period.planned_end is None:
            open_period.planned_end = open_period.end
        open_period.save()


class Migration(migrations.Migration):
    dependencies = [
        ("plans", "0004_guard_races_and_truncate"),
        ("subscriptions", "0006_tenant_external_id_format"),
    ]

    operations = [
        migrations.CreateModel(
            name="BillingPeriod",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                (
                    "currency",
                    models.CharField(help_text="ISO 4217: the plan version's, so every line it bills.", max_length=3),
                ),
                ("kind", models.CharField(choices=[("trial", "Trial"), ("paid", "Paid")], max_length=5)),
                ("start", models.DateTimeField()),
                ("end", models.DateTimeField(help_text="Exclusive. Until the period closes, where it is due to end.")),
                (
                    "planned_end",
                    models.DateTimeField(help_text="Where it was due to end when it opened (what a fee in advance covers)."),
                ),
                (
                    "fee_in_advance",
                    models.BooleanField(
                        help_text="Its base fee is billed when it starts (false for trials and after a plan change mid-period)."
                    ),
                ),
                ("closed", models.BooleanField(default=False)),
            ],
            options={
                "ordering": ["start", "id"],
            },
        ),
        migrations.RemoveIndex(
            model_name="subscriptionevent",
            name="subscriptionevent_billable",
        ),
        migrations.AddField(
            model_name="billingperiod",
            name="closed_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="closed_periods",
                to="subscriptions.subscriptionevent",
            ),
        ),
        migrations.AddField(
            model_name="billingperiod",
            name="opened_by",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT,
                related_name="opened_periods",
                to="subscriptions.subscriptionevent",
            ),
        ),
        migrations.AddField(
            model_name="billingperiod",
            name="plan_version",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="+", to="plans.planversion"
            ),
        ),
        migrations.AddField(
            model_name="billingperiod",
            name="subscription",
            field=models.ForeignKey(
                on_delete=django.db.models.deletion.PROTECT, related_name="periods", to="subscriptions.subscription"
            ),
        ),
        migrations.AddIndex(
            model_name="billingperiod",
            index=models.Index(
                condition=models.Q(("closed", True), ("kind", "paid")), fields=["end"], name="billingperiod_closed_paid"
            ),
        ),
        migrations.AddIndex(
            model_name="billingperiod",
            index=models.Index(
                condition=models.Q(("fee_in_advance", True)), fields=["start"], name="billingperiod_fee_in_advance"
            ),
        ),
        migrations.AddConstraint(
            model_name="billingperiod",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("end__gt", models.F("start")),
                    models.Q(("closed", True), ("end", models.F("start"))),
                    _connector="OR",
                ),
                name="billingperiod_not_empty",
            ),
        ),
        migrations.AddConstraint(
            model_name="billingperiod",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind__in", ["trial", "paid"])), name="billingperiod_kind_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="billingperiod",
            constraint=models.CheckConstraint(
                condition=models.Q(("kind", "paid"), ("fee_in_advance", False), _connector="OR"),
                name="billingperiod_trial_fee_not_in_advance",
            ),
        ),
        migrations.AddConstraint(
            model_name="billingperiod",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("closed", True), ("closed_by__isnull", False)),
                    models.Q(("closed", False), ("closed_by__isnull", True)),
                    _connector="OR",
                ),
                name="billingperiod_closed_by_iff_closed",
            ),
        ),
        migrations.AddConstraint(
            model_name="billingperiod",
            constraint=models.UniqueConstraint(
                condition=models.Q(("closed", False)), fields=("subscription",), name="billingperiod_one_open"
            ),
        ),
        migrations.RunPython(periods_from_events, migrations.RunPython.noop),
        migrations.RunSQL(GUARD, UNGUARD),
    ]
