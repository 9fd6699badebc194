"""Routes of the model registry."""

urlpatterns: list[object] = []
