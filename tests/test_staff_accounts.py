"""Coordinators' accounts guard health data: strong hashing, sessions that end when idle,
a pause after repeated wrong passwords, and a code from an authenticator app."""

import base64
import io
import re
import time
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import CommandError, call_command
from django.test import Client
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from .conftest import sign_in_with_second_factor

pytestmark = pytest.mark.django_db

TWO_FACTOR_URL = "/admin/two-factor/"


def test_passwords_are_hashed_with_argon2():
    user = User.objects.create_user("casey", password="a-long-fictional-pass")
    assert user.password.startswith("argon2$")


def test_a_staff_session_expires_after_thirty_idle_minutes(client):
    user = User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)
    sign_in_with_second_factor(client, user)
    response = client.get("/admin/")
    assert response.status_code == 200
    cookie = response.cookies["sessionid"]
    # Renewed on every request, so it is idle time that counts.
    assert cookie["max-age"] == 1800
    assert client.session.get_expiry_age() == 1800


def sign_in(client, password: str):
    return client.post(
        "/admin/login/?next=/admin/",
        {"username": "casey", "password": password},
        REMOTE_ADDR="203.0.113.9",
    )


def test_repeated_wrong_passwords_lock_the_account_out_for_a_while(client, settings):
    User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        assert sign_in(client, "wrong-guess").status_code == 200
    locked = sign_in(client, "wrong-guess")
    assert locked.status_code == 429
    assert "Sign-in paused for this account" in locked.content.decode()
    # Even the right password is refused until the pause ends.
    assert sign_in(client, "a-long-fictional-pass").status_code == 429
    assert client.get("/admin/").status_code == 302


def test_a_right_password_after_a_few_mistakes_goes_on_to_the_code(client):
    User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)
    sign_in(client, "wrong-guess")
    response = sign_in(client, "a-long-fictional-pass")
    assert response.status_code == 302
    assert response.url.startswith(TWO_FACTOR_URL)


def test_behind_the_load_balancer_the_lockout_is_per_visitor(client, settings):
    settings.AXES_CLIENT_IP_CALLABLE = "cancerfax.middleware.client_address"
    settings.TRUSTED_PROXIES = ["10.0.0.2/32"]
    User.objects.create_user("casey", password="a-long-fictional-pass", is_staff=True)

    def sign_in_via_balancer(password: str, forwarded: str):
        return Client().post(
            "/admin/login/",
            {"username": "casey", "password": password},
            REMOTE_ADDR="10.0.0.2",  # every request arrives from the load balancer
            HTTP_X_FORWARDED_FOR=forwarded,
        )

    for _ in range(settings.AXES_FAILURE_LIMIT):
        sign_in_via_balancer("wrong-guess", "198.51.100.7")
    assert sign_in_via_balancer("a-long-fictional-pass", "198.51.100.7").status_code == 429
    # Claiming another address in front of the real one changes nothing...
    spoofed = sign_in_via_balancer("a-long-fictional-pass", "192.0.2.1, 198.51.100.7")
    assert spoofed.status_code == 429
    # ...while the coordinator at another address is not locked out by someone else's guesses.
    elsewhere = sign_in_via_balancer("a-long-fictional-pass", "203.0.113.20")
    assert elsewhere.status_code == 302 and elsewhere.url.startswith(TWO_FACTOR_URL)


def code_at(device: TOTPDevice, moment: float | None = None) -> str:
    """The code the coordinator's phone would show (now, or at another moment)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() if moment is None else moment
    return f"{totp.token():06d}"


def send_code(client, code: str, next_url: str = "/admin/"):
    return client.post(f"{TWO_FACTOR_URL}?next={next_url}", {"code": code, "next": next_url})


@pytest.fixture
def casey(db) -> User:
    return User.objects.create_user(
        "casey", "casey@example.org", "a-long-fictional-pass", is_staff=True
    )


def test_a_password_alone_does_not_open_the_admin(client, casey):
    response = sign_in(client, "a-long-fictional-pass")
    assert response.url == f"{TWO_FACTOR_URL}?next=%2Fadmin%2F"
    assert client.get("/admin/").status_code == 302
    assert client.get("/admin/inquiries/inquiry/").url.startswith("/admin/login/")
    # The sign-in page sends a half-signed-in coordinator on to the code, not round again.
    assert client.get("/admin/login/").url.startswith(TWO_FACTOR_URL)


def setup_link_from_email() -> str:
    """The set-up link in the last email, as a path (the test client's site has no host)."""
    link = re.search(r"https?://\S+/admin/two-factor/set-up/\?token=\S+", mail.outbox[-1].body)
    address = urlsplit(link.group(0))
    return f"{address.path}?{address.query}"


def ask_for_setup_link(client) -> str:
    response = client.post(TWO_FACTOR_URL, {"send_link": "1", "next": "/admin/"})
    assert "We have sent a set-up link" in response.content.decode()
    return setup_link_from_email()


def test_the_first_sign_in_sets_up_the_authenticator_app_through_an_emailed_link(client, casey):
    sign_in(client, "a-long-fictional-pass")
    page = client.get(f"{TWO_FACTOR_URL}?next=/admin/").content.decode()
    # The password alone shows no key: a link to the person's own inbox is needed first.
    assert "Email me a set-up link" in page and "two-factor-key" not in page
    assert TOTPDevice.objects.count() == 0
    link = ask_for_setup_link(client)
    assert mail.outbox[-1].to == ["casey@example.org"]
    assert client.get(link).url == TWO_FACTOR_URL

    page = client.get(f"{TWO_FACTOR_URL}?next=/admin/").content.decode()
    assert "Set up your authenticator app" in page
    assert '<figure class="two-factor-qr"' in page and "</svg></figure>" in page
    device = TOTPDevice.objects.get(user=casey)
    assert device.confirmed is False
    # The key to type by hand is the device's own secret, in base32 as apps take it.
    typed = re.search(r'class="two-factor-key">([A-Z2-7 ]+)<', page).group(1)
    typed = typed.replace(" ", "")
    assert base64.b32decode(typed + "=" * (-len(typed) % 8)) == device.bin_key

    response = send_code(client, code_at(device))
    assert response.status_code == 302 and response.url == "/admin/"
    assert client.get("/admin/").status_code == 200
    device.refresh_from_db()
    assert device.confirmed is True
    # The link worked once.
    used = Client().get(link)
    assert used.status_code == 400 and "no longer works" in used.content.decode()


def test_the_link_may_be_opened_before_signing_in(casey):
    browser = Client()
    sign_in(Client(), "a-long-fictional-pass")
    ask_for_setup_link_as(casey)
    opened = browser.get(setup_link_from_email())
    assert opened.url == "/admin/login/"
    sign_in(browser, "a-long-fictional-pass")
    assert "two-factor-key" in browser.get(TWO_FACTOR_URL).content.decode()


def ask_for_setup_link_as(user: User) -> None:
    browser = Client()
    browser.force_login(user)
    browser.post(TWO_FACTOR_URL, {"send_link": "1"})


def test_a_second_browser_with_only_the_password_cannot_enrol(casey):
    owner, intruder = Client(), Client()
    sign_in(intruder, "a-long-fictional-pass")
    sign_in(owner, "a-long-fictional-pass")
    owner.get(ask_for_setup_link(owner))
    assert "two-factor-key" in owner.get(TWO_FACTOR_URL).content.decode()
    # The intruder, who knows the password but cannot read the owner's email, sees no key,
    # and typing any code confirms nothing.
    page = intruder.get(TWO_FACTOR_URL).content.decode()
    assert "two-factor-key" not in page and "Email me a set-up link" in page
    intruder.post(TWO_FACTOR_URL, {"code": "123456", "next": "/admin/"})
    assert intruder.get("/admin/").status_code == 302
    assert not TOTPDevice.objects.filter(confirmed=True).exists()


def test_a_set_up_link_for_someone_else_or_tampered_with_opens_nothing(client, casey):
    User.objects.create_user("robin", "robin@example.org", "another-fictional-pass", is_staff=True)
    ask_for_setup_link_as(User.objects.get(username="robin"))
    robins_link = setup_link_from_email()
    sign_in(client, "a-long-fictional-pass")
    client.get(robins_link)
    assert "two-factor-key" not in client.get(TWO_FACTOR_URL).content.decode()
    tampered = client.get(robins_link[:-5] + "xxxxx")
    assert tampered.status_code == 400 and "no longer works" in tampered.content.decode()


def test_a_set_up_link_expires(client, casey, settings, monkeypatch):
    sign_in(client, "a-long-fictional-pass")
    link = ask_for_setup_link(client)
    later = time.time() + settings.AUTHENTICATOR_SETUP_LINK_HOURS * 3600 + 60
    monkeypatch.setattr("django.core.signing.time.time", lambda: later)
    assert client.get(link).status_code == 400
    assert "two-factor-key" not in client.get(TWO_FACTOR_URL).content.decode()


def test_asking_again_and_again_sends_one_email_every_few_minutes(client, casey):
    sign_in(client, "a-long-fictional-pass")
    for _ in range(3):
        ask_for_setup_link(client)
    assert len(mail.outbox) == 1


def test_an_operator_can_print_a_set_up_link_for_the_first_superuser(client, casey):
    out = io.StringIO()
    call_command("authenticator_link", "casey", stdout=out)
    link = out.getvalue().strip()
    assert link.startswith("http://127.0.0.1:8000/admin/two-factor/set-up/?token=")
    sign_in(client, "a-long-fictional-pass")
    client.get(link.removeprefix("http://127.0.0.1:8000"))
    assert "two-factor-key" in client.get(TWO_FACTOR_URL).content.decode()
    with pytest.raises(CommandError):
        call_command("authenticator_link", "nobody-here", stdout=out)


def test_later_sign_ins_ask_for_the_code_only(client, casey):
    device = TOTPDevice.objects.create(user=casey, name="Phone", confirmed=True)
    sign_in(client, "a-long-fictional-pass")
    page = client.get(TWO_FACTOR_URL).content.decode()
    assert "Type your code" in page
    assert "two-factor-qr" not in page and "two-factor-key" not in page
    assert send_code(client, code_at(device)).url == "/admin/"
    assert TOTPDevice.objects.filter(user=casey).count() == 1


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("12345", "Please type the six digits your app shows"),
        ("abcdef", "Please type the six digits your app shows"),
        (None, "That code did not match"),
    ],
)
def test_a_wrong_code_is_refused_politely(client, casey, typed, message):
    device = TOTPDevice.objects.create(user=casey, name="Phone", confirmed=True)
    sign_in(client, "a-long-fictional-pass")
    # A code from ten minutes ahead: well formed, but not valid now.
    response = send_code(client, typed or code_at(device, time.time() + 600))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_the_right_code_after_a_wrong_one_waits_for_the_pause(client, casey, settings):
    settings.OTP_TOTP_THROTTLE_FACTOR = 60  # a pause long enough to see, even on a slow test run
    device = TOTPDevice.objects.create(user=casey, name="Phone", confirmed=True)
    sign_in(client, "a-long-fictional-pass")
    send_code(client, code_at(device, time.time() + 600))
    response = send_code(client, code_at(device))
    assert "please wait" in response.content.decode()
    assert client.get("/admin/").status_code == 302
    device.refresh_from_db()
    assert device.throttling_failure_count == 1


def test_a_code_works_once_only(casey):
    device = TOTPDevice.objects.create(user=casey, name="Phone", confirmed=True)
    first, second = Client(), Client()
    code = code_at(device)
    for browser in (first, second):
        sign_in(browser, "a-long-fictional-pass")
    assert send_code(first, code).status_code == 302
    # Someone who watched the code being typed cannot use it again.
    assert "That code did not match" in send_code(second, code).content.decode()
    assert second.get("/admin/").status_code == 302


def test_the_page_asked_for_is_kept_and_other_sites_are_not(client, casey):
    device = TOTPDevice.objects.create(user=casey, name="Phone", confirmed=True)
    response = client.post(
        "/admin/login/?next=/admin/inquiries/inquiry/",
        {"username": "casey", "password": "a-long-fictional-pass"},
    )
    assert response.url == f"{TWO_FACTOR_URL}?next=%2Fadmin%2Finquiries%2Finquiry%2F"
    assert send_code(client, code_at(device), "/admin/inquiries/inquiry/").url == (
        "/admin/inquiries/inquiry/"
    )
    client.logout()
    sign_in(client, "a-long-fictional-pass")
    later = code_at(device, time.time() + device.step)  # the first code is spent
    assert send_code(client, later, "https://phishing.example/").url == "/admin/"


def test_the_code_page_is_only_for_staff_who_gave_their_password(client):
    assert client.get(TWO_FACTOR_URL).url.startswith("/admin/login/")
    client.force_login(User.objects.create_user("pat", password="another-fictional-pass"))
    assert client.get(TWO_FACTOR_URL).url.startswith("/admin/login/")
    assert TOTPDevice.objects.count() == 0


def test_two_factor_can_be_switched_off_for_development(client, casey, settings):
    settings.STAFF_TWO_FACTOR = False
    assert sign_in(client, "a-long-fictional-pass").url == "/admin/"
    assert client.get("/admin/").status_code == 200


def typed_key_on(page: str) -> str:
    return re.search(r'class="two-factor-key">([A-Z2-7 ]+)<', page).group(1)


def test_reloading_the_setup_page_keeps_the_same_key(client, casey):
    sign_in(client, "a-long-fictional-pass")
    client.get(ask_for_setup_link(client))
    first = typed_key_on(client.get(TWO_FACTOR_URL).content.decode())
    assert typed_key_on(client.get(TWO_FACTOR_URL).content.decode()) == first
    assert TOTPDevice.objects.filter(user=casey).count() == 1


def test_signing_out_works_before_the_code_too(client, casey):
    sign_in(client, "a-long-fictional-pass")
    response = client.post("/admin/logout/")
    assert response.status_code == 302 and response.url == "/admin/login/"
    assert "_auth_user_id" not in client.session
    assert client.get(TWO_FACTOR_URL).url.startswith("/admin/login/")


def test_someone_else_can_sign_in_on_a_half_signed_in_browser(client, casey):
    User.objects.create_user("robin", password="another-fictional-pass", is_staff=True)
    sign_in(client, "a-long-fictional-pass")
    client.post("/admin/login/", {"username": "robin", "password": "another-fictional-pass"})
    assert client.session["_auth_user_id"] == str(User.objects.get(username="robin").pk)


def test_a_fully_signed_in_coordinator_signs_out_as_usual(client, casey):
    sign_in_with_second_factor(client, casey)
    assert client.post("/admin/logout/").status_code == 200
    assert "_auth_user_id" not in client.session
