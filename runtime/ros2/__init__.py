"""The policy as a ROS 2 node over plain DDS (Cyclone DDS), no ROS installation needed.

Optional: ``pip install 'lram-deploy[ros2]'``. Nothing here is imported by the core runtime.
"""
