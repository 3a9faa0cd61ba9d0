"""TE computes (each with a numpy integer reference) and their default schedules."""
