"""GET /api/v1/events: every event of every type in one order (API.md "Operations")."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.pagination import parse_limit
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

    @extend_schema(
        parameters=[
            OpenApiParameter("after", OpenApiTypes.STR, description="next_cursor of the last page"),
            OpenApiParameter("cursor", OpenApiTypes.STR, description="the same as `after`"),
            OpenApiParameter("limit", OpenApiTypes.INT, description="1-1000, default 100"),
        ],
        responses=inline_serializer(
            "EventFeed",
            {"results": _FeedItem, "next_cursor": serializers.CharField()},
        ),
    )
    def get(self, request: Request) -> Response:
        raw = request.query_params.get("after") or request.query_params.get("cursor")
        after = Position.decode(raw) if raw else START
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
