"""Music in: decoding and resampling, beats and bars (our tracker, librosa, madmom, beat files), AST music tokens."""
