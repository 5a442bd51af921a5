from django.contrib import admin

from .models import Tenant


@admin.register(Tenant)
class TenantAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["external_id", "name", "currency", "country", "created_at"]
    search_fields = ["external_id", "name"]
    readonly_fields = ["created_at"]
