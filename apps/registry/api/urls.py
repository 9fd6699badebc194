"""Routes of the model registry (API.md "Registry")."""

from django.urls import path

from apps.registry.api import views

urlpatterns = [
    path("models", views.ModelListView.as_view(), name="registry-models"),
    path("models/<str:name>", views.ModelDetailView.as_view(), name="registry-model"),
    path(
        "models/<str:name>/versions",
        views.ModelVersionListView.as_view(),
        name="registry-model-versions",
    ),
    path(
        "models/<str:name>/versions/<str:version>",
        views.ModelVersionDetailView.as_view(),
        name="registry-model-version",
    ),
    path(
        "models/<str:name>/aliases/<str:alias>",
        views.AliasView.as_view(),
        name="registry-model-alias",
    ),
    path(
        "models/<str:name>/aliases/<str:alias>/rollback",
        views.AliasRollbackView.as_view(),
        name="registry-model-alias-rollback",
    ),
]
