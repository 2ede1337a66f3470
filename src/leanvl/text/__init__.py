"""Text side: BERT tokenizer loading, MLM masking, caption cleaning."""

from leanvl.text.tokenizer import default_vocab_path, load_tokenizer, mask_tokens, pre_text

__all__ = ["default_vocab_path", "load_tokenizer", "mask_tokens", "pre_text"]
