"""Routes of the analytics endpoints."""

from django.urls import path

from apps.analytics.api import views

urlpatterns = [
    path(
        "experiments/<str:key>/results",
        views.ExperimentResultsView.as_view(),
        name="experiment-results",
    ),
    path(
        "models/<str:name>/performance",
        views.ModelPerformanceView.as_view(),
        name="model-performance",
    ),
    path("aggregations/run", views.AggregationRunView.as_view(), name="aggregations-run"),
]
