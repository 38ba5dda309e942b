from django.urls import path

from . import case, views

app_name = "inquiries"

urlpatterns = [
    path("new/", views.new_inquiry, name="new"),
    path("thank-you/", views.thank_you, name="thank_you"),
    path("privacy/", views.privacy, name="privacy"),
    path("case/open/", case.open_case, name="case_open"),
    path("case/", case.case, name="case"),
    path("case/sent/", case.case_sent, name="case_sent"),
    path("case/withdraw/", case.withdraw, name="case_withdraw"),
    path("case/withdrawn/", case.withdrawn, name="case_withdrawn"),
    path("case/sign-out/", case.sign_out, name="case_sign_out"),
    path("case/new-link/", case.new_link, name="case_new_link"),
]
