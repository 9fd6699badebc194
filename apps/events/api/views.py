"""GET /api/v1/events: every event of every type in one order (API.md "Operations")."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.pagination import parse_limit
from apps.core.query import Cursor, Limit, accepts
from apps.events.selectors import START, Position, event_feed

_FeedItem = inline_serializer(
    "FeedItem",
    {
        "type": serializers.CharField(),
        "cursor": serializers.CharField(),
        "event": serializers.DictField(),
    },
    many=True,
)


class EventFeedView(APIView):
    scopes = {"GET": "read"}

    @accepts(
        Cursor("after", description="next_cursor of the last page"),
        Cursor("cursor", description="the same as `after`"),
        Limit(),
    )
    @extend_schema(
        responses=inline_serializer(
            "EventFeed",
            {"results": _FeedItem, "next_cursor": serializers.CharField()},
        ),
    )
    def get(self, request: Request) -> Response:
        field = "after" if request.query_params.get("after") else "cursor"
        raw = request.query_params.get(field)
        after = Position.decode(raw, field=field) if raw else START
        items, last = event_feed(after=after, limit=parse_limit(request))
        return Response(
            {
                "results": [
                    {"type": item.type, "cursor": item.position.encode(), "event": item.event}
                    for item in items
                ],
                "next_cursor": last.encode(),
            }
        )
