"""The Django REST Framework peer: the same lead model, rule, audit, token auth and own-records permission as the
engine's API, built the way a Python team would with Django and DRF (``pip install django djangorestframework``).

``setup(db_path)`` configures Django for a SQLite file and creates the tables; ``wsgi_app()`` is the app to
serve (with waitress, like the engine).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def setup(db_path: Path | str) -> None:
    """Configure Django for ``db_path`` (once per process) and create the tables."""
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False, SECRET_KEY="bench-only", ALLOWED_HOSTS=["*"], USE_TZ=True, ROOT_URLCONF="bench.peers.drf.urls",
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "rest_framework",
                            "rest_framework.authtoken", "bench.peers.drf.leads"],
            MIDDLEWARE=[],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(db_path),
                                   "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                                               "transaction_mode": "IMMEDIATE", "timeout": 30}}},
            REST_FRAMEWORK={
                "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.TokenAuthentication"],
                "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
                "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
                "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
                "UNAUTHENTICATED_USER": None,
            },
            DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        )
        django.setup()
    from django.core.management import call_command

    call_command("migrate", run_syncdb=True, verbosity=0)


def make_user(username: str) -> str:
    """A user and its DRF token; the token key."""
    from django.contrib.auth.models import User
    from rest_framework.authtoken.models import Token

    user, _ = User.objects.get_or_create(username=username)
    return str(Token.objects.get_or_create(user=user)[0].key)


def wsgi_app() -> Any:
    from django.core.wsgi import get_wsgi_application

    return get_wsgi_application()
