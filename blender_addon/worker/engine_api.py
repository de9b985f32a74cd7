"""The parts of the engine a job uses, resolved once (tests pass stand-ins)."""

from .model import JobCancelled


class EngineAPI:
    """The parts of the engine a job uses, resolved once.

    ``engine`` is the engine package, or any object with the attributes
    ``frames``, ``stylizers`` (the module: ``stylize()``, ``parse_param()``),
    ``guides``, ``keyframes``, ``clips``, ``threads``, ``propagate`` (the function), ``JobSettings`` and
    ``Cancelled`` (tests pass stand-ins this way).
    """

    def __init__(self, engine):
        if isinstance(engine, EngineAPI):
            engine = engine.engine
        self.engine = engine
        # The engine package resolves each of these on first access, in a fresh
        # process too (engine/__init__.py); stand-ins are plain namespaces.
        self.propagate = engine.propagate
        self.plan_job = getattr(getattr(engine, "propagation", None), "plan_job", None)
        self.JobSettings = engine.JobSettings
        self.frames = engine.frames
        self.stylizers = engine.stylizers
        self.guides = engine.guides
        self.keyframes = engine.keyframes
        self.clips = engine.clips  # a strip made into a clip: the add-on does no image I/O itself
        self.set_threads = engine.threads.set_threads
        # Stand-ins in tests may lack the neural video functions.
        self.stylize_keys = getattr(engine, "stylize_keys", None)
        self.stylize_video = getattr(engine, "stylize_video", None)
        self.parse_video_param = getattr(engine, "parse_video_param", None)
        types = [JobCancelled]
        for owner in (engine, self.stylizers):
            cls = getattr(owner, "Cancelled", None)
            if isinstance(cls, type) and issubclass(cls, BaseException) and cls not in types:
                types.append(cls)
        self.cancelled_types = tuple(types)
