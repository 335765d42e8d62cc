"""Experiments run to an answer: a matrix of arms (recipe + model + image size + epochs) x seeds
(``matrix``), a runner that trains, predicts and scores each pair not yet done within a time
budget (``runner``), and the ledger where every finished run leaves one complete entry
(``ledger``), from which ``smallbox report --ledger`` writes the results page."""
