"""What is asked: models, jobs, request streams and the work each one is.

No time and no hardware here: FLOPs, bytes, memory, collective volumes and
token counts. The hardware layer turns this work into seconds; the sim layer
decides when and where it runs.
"""
