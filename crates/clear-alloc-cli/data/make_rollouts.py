# Synthetic rollouts for examples/data/rollouts.csv (seeded; stdlib only).
import random
random.seed(20260601)
CAP = 2048
queries = [  # id, threshold, width, ceiling, rollouts
    ("gsm8k-17", 151, 101, 0.95, 24),
    ("gsm8k-42", 120, 90, 0.90, 24),
    ("math-3", 142, 218, 0.80, 24),
    ("math-88", 260, 240, 0.70, 24),
    ("aime-5", 304, 280, 0.45, 24),
    ("aime-12", 520, 400, 0.30, 24),
    ("amc-9", 700, 500, 0.10, 16),
    ("olymp-1", 900, 600, 0.0, 16),
]
print("query_id,tokens,correct,truncated")
for qid, t, w, p, n in queries:
    for _ in range(n):
        correct = random.random() < p
        length = t + random.gammavariate(2, w) if correct else random.uniform(40, 3 * (t + 2 * w))
        tokens = round(length)
        if tokens > CAP:
            print(f"{qid},{CAP},false,true")
        else:
            print(f"{qid},{tokens},{'true' if correct else 'false'},false")
