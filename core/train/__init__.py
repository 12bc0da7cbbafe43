"""`actlab train <task>` trainers: one module per task (mnist.py, biencoder.py), sharing loop.py
(devices, checkpoints, signals), config.py (every option, declared once) and session.py (create /
resume / branch / stop / fail). The command line is core/cli/train.py."""
