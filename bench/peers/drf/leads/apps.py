from __future__ import annotations

from django.apps import AppConfig


class LeadsConfig(AppConfig):
    name = "bench.peers.drf.leads"
    label = "leads"
    default_auto_field = "django.db.models.BigAutoField"
