"""The build as a transaction, and what makes it cheap to repeat (docs/ARCHITECTURE.md).

    transaction   `build`: the up-to-date check, `--locked`, `--frozen`, then the pipeline, then the tree and the
                  lock replaced together (a journal makes the pair atomic); builds of one project serialised
    frozen        the Decider that reads costs and the decision from taso.lock (`build --frozen`)
    lock          taso.lock's format: render, parse, compare
    state         what the last build saw: file stamps and digests in the user cache, the lock's [inputs]
    noop          the fast "up to date" answer, before the stages' libraries are imported
    stagecache    a stage's result on disk by the digest of its inputs (the pipeline's Memo)

Nothing below tasobuild.pipeline imports this package, except the stage cache through the Memo it is given.
"""
