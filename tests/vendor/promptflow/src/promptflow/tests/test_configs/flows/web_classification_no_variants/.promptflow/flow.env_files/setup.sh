#!/bin/bash
# Install your packages here.
