from __future__ import annotations

from rest_framework.routers import SimpleRouter

from bench.peers.drf.leads.views import LeadViewSet

router = SimpleRouter(trailing_slash=False)
router.register("leads", LeadViewSet, basename="lead")
urlpatterns = router.urls
