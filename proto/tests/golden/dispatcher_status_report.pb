
n1
t1runningstarted