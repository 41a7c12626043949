"""Helpers shared by the tests and the load tests: free ports, databases,
`modelreg serve` processes, in-process servers, a moto S3 server, test
certificates and the decoding of error details.

pytest puts tests/ on the module path (for conftest.py), so tests import
these as `support.<module>`; the scripts in loadtest/ put it there themselves
(see loadtest/common.py). Fixtures stay in conftest.py; everything a test
module or a benchmark calls directly lives here.
"""
