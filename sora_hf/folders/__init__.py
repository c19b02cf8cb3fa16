"""The folders a command reads and writes: checkpoints as inputs (`checkpoints`: a local path stays local, weights
that do not fit their class are an error) and output folders (`outputs`: nothing a user saved is overwritten)."""
