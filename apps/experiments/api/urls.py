"""Routes of the experiments app (POST /api/v1/assignments is routed in config/urls.py, first)."""

from django.urls import path

from apps.experiments.api import views

urlpatterns = [
    path("experiments", views.ExperimentListView.as_view(), name="experiment-list"),
    path("experiments/<str:key>", views.ExperimentDetailView.as_view(), name="experiment-detail"),
    path(
        "experiments/<str:key>/start",
        views.ExperimentStartView.as_view(),
        name="experiment-start",
    ),
    path(
        "experiments/<str:key>/pause",
        views.ExperimentPauseView.as_view(),
        name="experiment-pause",
    ),
    path("experiments/<str:key>/stop", views.ExperimentStopView.as_view(), name="experiment-stop"),
    path("experiments/<str:key>/ship", views.ExperimentShipView.as_view(), name="experiment-ship"),
    path(
        "experiments/<str:key>/ramp/advance",
        views.ExperimentRampAdvanceView.as_view(),
        name="experiment-ramp-advance",
    ),
]
