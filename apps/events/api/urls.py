"""Routes of the event feed."""

from django.urls import path

from apps.events.api.views import EventFeedView

urlpatterns = [path("events", EventFeedView.as_view(), name="event-feed")]
