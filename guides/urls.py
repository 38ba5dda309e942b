from django.urls import path

from . import views

app_name = "guides"

urlpatterns = [
    path("", views.guide_list, name="list"),
    path("<slug:slug>/", views.guide_detail, name="detail"),
    path("<slug:slug>/preview/", views.guide_preview, name="preview"),
    path("<slug:slug>/revisions/<int:number>/", views.guide_revision, name="revision"),
]
