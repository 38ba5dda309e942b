from django.urls import path

from . import views

app_name = "guides"

urlpatterns = [
    path("", views.guide_list, name="list"),
    path("how-we-write-our-guides/", views.how_we_write, name="how_we_write"),
    path("<slug:slug>/", views.guide_detail, name="detail"),
    path("<slug:slug>/preview/", views.guide_preview, name="preview"),
    path("<slug:slug>/feedback/", views.guide_feedback, name="feedback"),
    path("<slug:slug>/feedback/thanks/", views.feedback_thanks, name="feedback_thanks"),
    path("<slug:slug>/revisions/<int:number>/", views.guide_revision, name="revision"),
]
