from django.urls import path

from . import views

urlpatterns = [
    path("stripe/", views.stripe_webhook, name="stripe-webhook"),
    # Without the slash too: APPEND_SLASH's redirect would drop the POST body Stripe signed.
    path("stripe", views.stripe_webhook),
]
