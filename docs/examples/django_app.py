"""Receiving payment notifications in a Django project: a view that passes the raw body.

Put the view in one of your apps and its URL pattern in your URLconf (this module is also a
complete URLconf: ``ROOT_URLCONF = "django_app"``). The core is created on first use from
``settings.ORDERCORE_DATABASE_URL``.
"""

from __future__ import annotations

from functools import cache

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from ordercore import OrderCore
from ordercore.web import deliver_callback


@cache
def get_core() -> OrderCore:
    """The one OrderCore of this process."""
    return OrderCore.from_url(settings.ORDERCORE_DATABASE_URL)


# --8<-- [start:view]
@csrf_exempt  # a payment platform sends no CSRF token: the channel checks its signature
@require_POST  # anything else: 405 with an Allow header
def payment_callback(request: HttpRequest, channel: str) -> HttpResponse:
    # request.body is the raw body, byte for byte (read it before request.POST).
    reply = deliver_callback(
        get_core(), channel, request.headers, request.body, request.META.get("REMOTE_ADDR")
    )
    response = HttpResponse(reply.body, status=reply.status)
    del response["Content-Type"]  # send the channel's headers, and only those
    for name, value in reply.headers.items():
        response[name] = value
    return response


urlpatterns = [
    path("pay/callbacks/<str:channel>", payment_callback, name="ordercore-callback"),
]
# --8<-- [end:view]
