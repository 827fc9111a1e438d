from __future__ import annotations

from django.contrib import admin

from posts.models import Comment, Post


@admin.register(Post)
class PostAdmin(admin.ModelAdmin):
    list_display = ("title", "author", "published")
    prepopulated_fields = {"slug": ("title",)}  # noqa: RUF012 -- Django reads it so


admin.site.register(Comment)
