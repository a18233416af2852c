"""FUSAR-GPT trainer: the TLM, the base VLM wrapper, the data readers, training and evaluation."""
