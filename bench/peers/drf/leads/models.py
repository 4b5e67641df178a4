"""The lead of the manufacturing template, as a Django model, with a field-level audit row per change."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models, transaction

INDUSTRIES = [(k, k) for k in ("manufacturing", "services", "it", "finance", "education", "other")]
REGIONS = [(k, k) for k in ("east", "north", "south", "west")]
STATUSES = [(k, k) for k in ("new", "working", "qualified", "unqualified", "converted")]
AUDITED = ("company", "contact_name", "phone", "email", "industry", "region", "budget", "status", "owner_id")


class Lead(models.Model):
    company = models.CharField(max_length=200, db_index=True)
    contact_name = models.CharField(max_length=100, blank=True, null=True)
    phone = models.CharField(max_length=40, blank=True, null=True)
    email = models.EmailField(max_length=254, blank=True, null=True)
    industry = models.CharField(max_length=40, choices=INDUSTRIES, blank=True, null=True)
    region = models.CharField(max_length=40, choices=REGIONS, blank=True, null=True)
    budget = models.DecimalField(max_digits=18, decimal_places=2, blank=True, null=True)
    status = models.CharField(max_length=40, choices=STATUSES, default="new")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    version = models.IntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [models.Index(fields=["region", "-created_at", "-id"]),
                   models.Index(fields=["industry", "-created_at", "-id"]),
                   models.Index(fields=["-created_at", "-id"])]

    def save(self, *args: Any, **kwargs: Any) -> None:
        """Save and write one audit row per changed field (one for the whole record on create)."""
        with transaction.atomic():
            if self.pk is None:
                super().save(*args, **kwargs)
                AuditEntry.objects.create(lead_id=self.pk, action="create", field=None,
                                          new_value={k: _plain(getattr(self, k)) for k in AUDITED})
                return
            before = Lead.objects.filter(pk=self.pk).values(*AUDITED).first() or {}
            super().save(*args, **kwargs)
            AuditEntry.objects.bulk_create([
                AuditEntry(lead_id=self.pk, action="update", field=k, old_value=_plain(before.get(k)),
                           new_value=_plain(getattr(self, k))) for k in AUDITED
                if before.get(k) != getattr(self, k)])


class AuditEntry(models.Model):
    lead_id = models.BigIntegerField(db_index=True)
    action = models.CharField(max_length=20)
    field = models.CharField(max_length=100, null=True)
    old_value = models.JSONField(null=True)
    new_value = models.JSONField(null=True)
    at = models.DateTimeField(auto_now_add=True)


def _plain(value: Any) -> Any:
    return str(value) if value is not None and not isinstance(value, (int, str, bool, float)) else value
