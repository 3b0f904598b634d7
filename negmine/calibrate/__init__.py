"""Per-run calibration of false-negative filtering (`negmine calibrate`): judge a small seeded sample of queries
with an LLM judge, fit p(false negative) over the signals select computes, and choose the threshold that meets a
false-negative target while keeping k negatives. ``select`` applies it as the rule ``predicted_false_negative``.

Pure parts: :mod:`.features` (feature matrix), :mod:`.model` (noise-aware logistic model, portable JSON);
I/O shell: :mod:`.stage`."""
