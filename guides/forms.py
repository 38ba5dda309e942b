from django import forms

from .models import Feedback

COMMENT_LIMIT = 1000


class FeedbackForm(forms.ModelForm):
    """ "Was this page useful?": a yes or a no (the button pressed) and an optional comment."""

    useful = forms.TypedChoiceField(
        choices=[("yes", "Yes"), ("no", "No")],
        coerce=lambda value: value == "yes",
        error_messages={"required": "Please choose Yes or No."},
    )
    comment = forms.CharField(
        required=False,
        max_length=COMMENT_LIMIT,
        widget=forms.Textarea(attrs={"rows": 3}),
        label="Anything we should change? (optional)",
        help_text="Please do not write names, contact details or health details here: "
        "this box is read by our editors, not by the patient coordinators.",
        error_messages={
            "max_length": f"Please keep your comment under {COMMENT_LIMIT} characters "
            "(it has %(show_value)d)."
        },
    )

    class Meta:
        model = Feedback
        fields = ["useful", "comment"]

    def save_for(self, guide) -> Feedback:
        """Stores the answer against the revision the reader was served (`guide` from
        Guide.objects.published())."""
        feedback = self.save(commit=False)
        feedback.guide, feedback.revision_number = guide, guide.current_number
        feedback.save()
        return feedback
