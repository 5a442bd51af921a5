from django.urls import path

from . import api

urlpatterns = [
    path("proposals", api.ProposalsApi.as_view(), name="proposals"),
    path("proposals/<int:proposal_id>", api.ProposalApi.as_view(), name="proposal"),
]
