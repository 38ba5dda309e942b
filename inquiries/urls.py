from django.urls import path

from . import views

app_name = "inquiries"

urlpatterns = [
    path("new/", views.new_inquiry, name="new"),
    path("thank-you/", views.thank_you, name="thank_you"),
    path("privacy/", views.privacy, name="privacy"),
]
