"""mate.text: sub-texts, vocabulary and text encoders."""
