"""Routes of the experiments app."""

urlpatterns: list[object] = []
