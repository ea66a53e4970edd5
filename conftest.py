"""Settings shared by every suite in this repository (tests/, evals/, training/)."""

from hypothesis import HealthCheck, settings

# Property tests run a parser or scorer per example; wall-clock deadlines only add noise on
# shared 2-core CI machines.
settings.register_profile("punie", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("punie")
