"""Kanerva-machine family: Kanerva++ (Ramapuram et al. 2021), the Dynamic Kanerva Machine and the
Kanerva Machine (Wu et al. 2018a, b), and the VAE with K++'s encoder/decoder used as their baseline."""
