"""Sweeps and the task machinery beneath them (``eqprop sweep``, and the experiments of
``eqprop reproduce`` run as tasks). One job per module; each imports only modules above it
in this order (``tests/test_sweeps_layout.py`` checks it):

.. code-block:: text

    tasks      Task (a function named by its module path, and its arguments), the
       |       whole-number options of how tasks run, the progress count
    trial      a sweep trial's run directory: its events, its state, train_trial (its task)
       |
    engine     tasks run as Ray Tune trials; the Tune trainable run_task (the only Ray user)
       |
    placement  Placement (in this process or on Ray) and run_tasks, for the experiments
       |
    results    a sweep's tables and plot, read from its trial directories
       |
    spec       a sweep file read and validated into a Sweep of Trials
       |
    command    run_sweep, write_results, and the eqprop sweep command line

This package imports none of them: import the module you need, e.g.
``from eqprop.sweeps.command import run_sweep``.
"""
