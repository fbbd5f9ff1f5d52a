"""The dataset-wide knowledge graph of proposals and its multiway cut: dump reading, kNN, graph
building, alpha-expansion with OR-Tools max-flow, and the CKR LP relaxation as a certificate."""
