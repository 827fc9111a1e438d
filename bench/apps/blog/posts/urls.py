from __future__ import annotations

from django.urls import path

from posts import views

urlpatterns = [
    path("", views.hello),
    path("revision", views.revision),
    path("posts/<slug:slug>", views.detail),
]
