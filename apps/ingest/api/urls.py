"""Routes of the ingest app."""

from django.urls import path

from apps.ingest.api.views import (
    FeedbackCollectionView,
    FeedbackDetailView,
    PredictionCollectionView,
    PredictionDetailView,
)

urlpatterns = [
    path("predictions", PredictionCollectionView.as_view(), name="prediction-list"),
    path("predictions/<str:id>", PredictionDetailView.as_view(), name="prediction-detail"),
    path("feedback", FeedbackCollectionView.as_view(), name="feedback-list"),
    path("feedback/<str:id>", FeedbackDetailView.as_view(), name="feedback-detail"),
]
