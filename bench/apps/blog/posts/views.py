from __future__ import annotations

import os

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.http import require_GET

from posts.forms import CommentForm
from posts.models import Post

# What bench/devloop.py edits: its answer shows which code serves.
REVISION = 0


@require_GET
def hello(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"hello from pid {os.getpid()}\n", content_type="text/plain")


@require_GET
def revision(request: HttpRequest) -> HttpResponse:
    return HttpResponse(f"revision {REVISION} pid {os.getpid()}", content_type="text/plain")


def detail(request: HttpRequest, slug: str) -> JsonResponse:
    post = get_object_or_404(Post, slug=slug)
    form = CommentForm()
    return JsonResponse({"title": post.title, "fields": list(form.fields)})
