"""DRF serializer and viewset: create, retrieve, list (filter + sort, cursor pages), PATCH with a version check."""

from __future__ import annotations

from typing import Any

from django.db.models import F
from rest_framework import serializers, status, viewsets
from rest_framework.pagination import CursorPagination
from rest_framework.request import Request
from rest_framework.response import Response

from bench.peers.drf.leads.models import Lead


class LeadSerializer(serializers.ModelSerializer):
    class Meta:
        model = Lead
        fields = ["id", "version", "company", "contact_name", "phone", "email", "industry", "region", "budget",
                  "status", "owner", "created_at", "updated_at"]
        read_only_fields = ["id", "version", "owner", "created_at", "updated_at"]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """The rule the engine's lead has: an email or a phone."""
        merged = {**({"email": self.instance.email, "phone": self.instance.phone} if self.instance else {}), **attrs}
        if not merged.get("email") and not merged.get("phone"):
            raise serializers.ValidationError("Give an email or a phone")
        return attrs


class NewestFirst(CursorPagination):
    """Keyset pages like the engine's cursors (no COUNT per page)."""

    page_size = 50
    max_page_size = 500
    page_size_query_param = "limit"
    ordering = ("-created_at", "-id")


class LeadViewSet(viewsets.ModelViewSet):
    serializer_class = LeadSerializer
    pagination_class = NewestFirst
    http_method_names = ["get", "post", "patch"]

    def get_queryset(self) -> Any:
        """Own records only, optionally filtered by region or industry."""
        qs = Lead.objects.filter(owner=self.request.user)
        for key in ("region", "industry"):
            if key in self.request.query_params:
                qs = qs.filter(**{key: self.request.query_params[key]})
        return qs

    def perform_create(self, serializer: LeadSerializer) -> None:
        serializer.save(owner=self.request.user)

    def partial_update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """PATCH needs If-Match with the current version; 409 when someone else wrote first."""
        lead = self.get_object()
        expected = request.headers.get("If-Match", "").strip('"')
        if not expected.isdigit():
            return Response({"detail": "If-Match required"}, status=status.HTTP_428_PRECONDITION_REQUIRED)
        serializer = self.get_serializer(lead, data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        updated = Lead.objects.filter(pk=lead.pk, version=int(expected)).update(version=F("version") + 1)
        if not updated:
            return Response({"detail": "version conflict"}, status=status.HTTP_409_CONFLICT)
        lead.version = int(expected) + 1
        serializer.save(version=lead.version)
        return Response(serializer.data)
