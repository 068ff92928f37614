"""What keeps a sweep going through failures: resuming preempted and retried trials
(``resume.py``), failing the trials of workers that died (``orphans.py``), repairing a
torn journal (``journal.py``), RDB heartbeats (``heartbeat.py``) and failing a trial
with its retry enqueued (``retry.py``).
"""
