"""Benchmark decontamination (DeepSeek-Coder §2.4): drop any document containing a 10-gram of words
(characters, for Chinese) identical to test data, or the whole of a test string of 3–9 tokens."""
