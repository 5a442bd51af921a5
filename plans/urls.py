from django.urls import path

from . import api

urlpatterns = [
    path("plans", api.PlanListApi.as_view(), name="plans-list"),
    path("plans/<str:code>", api.PlanDetailApi.as_view(), name="plans-detail"),
    path("pricing/estimate", api.PricingEstimateApi.as_view(), name="pricing-estimate"),
]
