"""mate.text: sub-texts (``mate.text.subtexts``), the vocabulary (``mate.text.vocab``) and text
encoders (``mate.text.encoders``, imported on demand: it loads transformers)."""
from .subtexts import export_llm_prompts, import_llm_answers, split_subtexts
from .vocab import Vocabulary, build_vocabulary, locate_words, word_token_ids

__all__ = ["Vocabulary", "build_vocabulary", "export_llm_prompts", "import_llm_answers", "locate_words",
           "split_subtexts", "word_token_ids"]
